// Module ids by order rather than by a hash of the module's absolute path,
// so the bundle is byte-identical whichever folder it is built in.
module.exports = {
  optimization: {
    moduleIds: 'natural'
  }
};
