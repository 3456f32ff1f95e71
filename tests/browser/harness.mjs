// Starts a throwaway JupyterLab server and a headless Debian Chromium, and
// offers page helpers for notebooks. On failure, `saveArtifacts` keeps a
// screenshot and the JupyterLab log in an artifacts folder it prints.
import { spawn, execSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const here = path.dirname(fileURLToPath(import.meta.url));
export const repoRoot = path.resolve(here, '..', '..');

export const config = {
  venv: process.env.JUPYTER_VENV ?? defaultVenv(),
  labextension:
    process.env.NP_LABEXTENSION_DIR ??
    path.join(repoRoot, 'labextension/notebook_predictor_labextension'),
  kernelspecDirs: (process.env.NP_KERNELSPEC_DIRS ?? '').split(':').filter(Boolean),
  setup: process.env.NP_SETUP ?? '',
  artifacts:
    process.env.ARTIFACTS_DIR ??
    path.join(here, 'artifacts', new Date().toISOString().replace(/[:.]/g, '-')),
  chromium: process.env.CHROMIUM ?? '/usr/bin/chromium',
  // The real kernel: `NP_BINARY install` writes the kernelspecs (empty: install none).
  binary: process.env.NP_BINARY ?? path.join(repoRoot, 'target/release/notebook-predictor'),
  // Model of the `notebook-predictor` kernelspec (default: the fixture model).
  model: process.env.NP_MODEL ?? ''
};

/** The repo's `.venv` (made by install.sh --test-tools), else the devtools venv. */
function defaultVenv() {
  const local = path.join(repoRoot, '.venv');
  if (fs.existsSync(path.join(local, 'bin/jupyter-lab'))) {
    return local;
  }
  return path.join(os.homedir(), '.cache/notebook-predictor/devtools-venv');
}

let fixtureModelDir = null;

/**
 * The fixture model: $NOTEBOOK_PREDICTOR_FIXTURE_MODEL, else one trained (once per process)
 * into a temporary dir with tests/fixtures/train-fixture-model.sh.
 */
export function fixtureModel() {
  if (process.env.NOTEBOOK_PREDICTOR_FIXTURE_MODEL) {
    return process.env.NOTEBOOK_PREDICTOR_FIXTURE_MODEL;
  }
  if (!fixtureModelDir) {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'np-fixture-model-'));
    process.on('exit', () => fs.rmSync(dir, { recursive: true, force: true }));
    console.error(`training the fixture model into ${dir} (set NOTEBOOK_PREDICTOR_FIXTURE_MODEL to reuse one)`);
    execSync(`tests/fixtures/train-fixture-model.sh ${JSON.stringify(path.join(dir, 'model'))} ${JSON.stringify(config.binary)}`, {
      cwd: repoRoot,
      stdio: 'inherit'
    });
    fixtureModelDir = path.join(dir, 'model');
  }
  return fixtureModelDir;
}

/**
 * Installs the real kernel into the data dir of `env` with `notebook-predictor install --user`
 * (kernelspec with logos, plus the JupyterLab extension the binary embeds). Extra kernelspecs:
 * `extraSpecs` entries `{name, model, args, displayName}`.
 */
function installPredictorKernels(env, extraSpecs) {
  const specs = [{ name: 'notebook-predictor', model: config.model || fixtureModel() }, ...extraSpecs];
  for (const spec of specs) {
    execSync(
      [config.binary, 'install', '--user', '--name', spec.name, '--model', spec.model]
        .map(a => JSON.stringify(a))
        .join(' '),
      { env, cwd: repoRoot, stdio: ['ignore', 'ignore', 'inherit'] }
    );
    if (spec.args || spec.displayName) {
      const file = path.join(env.JUPYTER_DATA_DIR, 'kernels', spec.name, 'kernel.json');
      const kernelJson = JSON.parse(fs.readFileSync(file, 'utf8'));
      kernelJson.argv.push(...(spec.args ?? []));
      kernelJson.display_name = spec.displayName ?? kernelJson.display_name;
      fs.writeFileSync(file, JSON.stringify(kernelJson, null, 2));
    }
  }
}

const CHROMIUM_ARGS = [
  '--no-sandbox',
  '--disable-gpu',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--no-first-run',
  '--disable-quic'
];

function freePort() {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

function writeJson(file, value) {
  fs.mkdirSync(path.dirname(file), { recursive: true });
  fs.writeFileSync(file, JSON.stringify(value, null, 2));
}

/**
 * Starts `jupyter lab` on 127.0.0.1 with a random port and token, a temporary
 * root dir and temporary Jupyter data/config/runtime dirs. The extension bundle
 * and any kernelspec dirs are copied into the data dir; `NP_SETUP` (a shell
 * command) runs with JUPYTER_DATA_DIR pointing there before the server starts.
 */
export async function startJupyterLab({ timeoutMs = 90_000, extraSpecs = [] } = {}) {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'np-lab-'));
  const dirs = Object.fromEntries(
    ['root', 'data', 'config', 'runtime', 'ipython'].map(d => [d, path.join(tmp, d)])
  );
  Object.values(dirs).forEach(d => fs.mkdirSync(d, { recursive: true }));
  const env = {
    ...process.env,
    JUPYTER_DATA_DIR: dirs.data,
    JUPYTER_CONFIG_DIR: dirs.config,
    JUPYTER_RUNTIME_DIR: dirs.runtime,
    IPYTHONDIR: dirs.ipython,
    // The kernel's input history stays in the temp dir.
    NOTEBOOK_PREDICTOR_HISTORY: path.join(tmp, 'history.jsonl')
  };
  if (config.binary) {
    installPredictorKernels(env, typeof extraSpecs === 'function' ? extraSpecs(tmp) : extraSpecs);
  }
  // An explicit bundle replaces the one the binary installed.
  if (config.labextension && (process.env.NP_LABEXTENSION_DIR || !config.binary)) {
    fs.cpSync(config.labextension, path.join(dirs.data, 'labextensions/notebook-predictor'), {
      recursive: true
    });
  }
  for (const spec of config.kernelspecDirs) {
    fs.cpSync(spec, path.join(dirs.data, 'kernels', path.basename(spec)), { recursive: true });
  }
  if (config.setup) {
    execSync(config.setup, { env, stdio: 'inherit', cwd: repoRoot });
  }
  // No news or update checks: the machine may be offline.
  writeJson(
    path.join(dirs.config, 'lab/user-settings/@jupyterlab/apputils-extension/notification.jupyterlab-settings'),
    { fetchNews: 'false', checkForUpdates: false }
  );

  const port = await freePort();
  const token = randomBytes(16).toString('hex');
  const logPath = path.join(tmp, 'jupyterlab.log');
  const log = fs.openSync(logPath, 'a');
  const proc = spawn(
    path.join(config.venv, 'bin/jupyter-lab'),
    [
      '--no-browser',
      '--ServerApp.ip=127.0.0.1',
      `--ServerApp.port=${port}`,
      '--ServerApp.port_retries=0',
      `--IdentityProvider.token=${token}`,
      `--ServerApp.root_dir=${dirs.root}`,
      '--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate',
      '--expose-app-in-browser',
      ...(process.getuid?.() === 0 ? ['--allow-root'] : [])
    ],
    { env, stdio: ['ignore', log, log], detached: true }
  );
  const base = `http://127.0.0.1:${port}/`;
  const lab = {
    base,
    token,
    url: `${base}lab?token=${token}`,
    dirs,
    env,
    logPath,
    proc,
    async stop() {
      if (proc.exitCode === null) {
        const exited = new Promise(resolve => proc.once('exit', resolve));
        process.kill(-proc.pid, 'SIGTERM');
        const timer = setTimeout(() => process.kill(-proc.pid, 'SIGKILL'), 10_000);
        await exited;
        clearTimeout(timer);
      }
      fs.closeSync(log);
      if (!process.env.NP_KEEP_TMP) {
        fs.rmSync(tmp, { recursive: true, force: true });
      }
    }
  };

  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (proc.exitCode !== null) {
      const message = `jupyter lab exited with ${proc.exitCode}; log:\n${tail(logPath)}`;
      await saveArtifacts(null, lab, 'jupyterlab-start');
      await lab.stop();
      throw new Error(message);
    }
    try {
      const res = await fetch(`${base}api/status?token=${token}`);
      if (res.ok) {
        return lab;
      }
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) {
      await saveArtifacts(null, lab, 'jupyterlab-start');
      await lab.stop();
      throw new Error(`jupyter lab did not answer within ${timeoutMs} ms`);
    }
    await new Promise(resolve => setTimeout(resolve, 200));
  }
}

function tail(file, lines = 40) {
  try {
    return fs.readFileSync(file, 'utf8').split('\n').slice(-lines).join('\n');
  } catch {
    return '(no log)';
  }
}

export async function launchBrowser() {
  return chromium.launch({
    executablePath: config.chromium,
    headless: true,
    args: CHROMIUM_ARGS
  });
}

/** Opens JupyterLab and waits for the exposed app to be restored. */
export async function openLab(browser, lab) {
  const context = await browser.newContext({ viewport: { width: 1400, height: 900 } });
  const page = await context.newPage();
  page.consoleLines = [];
  page.on('console', msg => page.consoleLines.push(`[${msg.type()}] ${msg.text()}`));
  page.on('pageerror', err => page.consoleLines.push(`[pageerror] ${err.message}`));
  // A workspace of its own, so notebooks of earlier pages are not restored.
  await page.goto(`${lab.base}lab/workspaces/np-${randomBytes(4).toString('hex')}?token=${lab.token}`);
  await page.waitForFunction(() => window.jupyterapp !== undefined, null, { timeout: 60_000 });
  await page.evaluate(() => window.jupyterapp.restored);
  return page;
}

/** Saves a screenshot, the browser console and the JupyterLab log. */
export async function saveArtifacts(page, lab, name) {
  fs.mkdirSync(config.artifacts, { recursive: true });
  const shot = path.join(config.artifacts, `${name}.png`);
  if (page && !page.isClosed()) {
    await page.screenshot({ path: shot }).catch(() => undefined);
    fs.writeFileSync(path.join(config.artifacts, `${name}.console.log`), page.consoleLines.join('\n'));
  }
  if (lab) {
    fs.copyFileSync(lab.logPath, path.join(config.artifacts, `${name}.jupyterlab.log`));
  }
  console.error(`artifacts saved: ${config.artifacts} (${name}.*)`);
  return shot;
}

/** Creates a notebook with the given kernel and waits until the kernel is idle. */
export async function newNotebook(page, kernelName) {
  await page.evaluate(
    name => window.jupyterapp.commands.execute('notebook:create-new', { kernelName: name }),
    kernelName
  );
  await page.waitForFunction(
    name => {
      const panel = window.jupyterapp.shell.currentWidget;
      const kernel = panel?.sessionContext?.session?.kernel;
      return kernel?.name === name && kernel.status === 'idle' && !!panel.content.activeCell;
    },
    kernelName,
    { timeout: 60_000 }
  );
}

export const activeCell = '.jp-NotebookPanel:not(.lm-mod-hidden) .jp-Cell.jp-mod-active';
export const ghost = `${activeCell} .jp-GhostText`;

/** Source of the active cell. */
export function activeSource(page) {
  return page.evaluate(() =>
    window.jupyterapp.shell.currentWidget.content.activeCell.model.sharedModel.getSource()
  );
}

/** Waits until the active cell's source satisfies `expected` (a string). */
/** Waits until cell `index` is the active cell and the notebook is in `mode`. */
export async function waitForCell(page, index, mode) {
  await page.waitForFunction(
    ([i, m]) => {
      const nb = window.jupyterapp.shell.currentWidget.content;
      return nb.activeCellIndex === i && nb.mode === m;
    },
    [index, mode],
    { timeout: 20_000 }
  );
}

export async function waitForSource(page, expected, timeout = 10_000) {
  await page
    .waitForFunction(
      want =>
        window.jupyterapp.shell.currentWidget.content.activeCell.model.sharedModel.getSource() === want,
      expected,
      { timeout }
    )
    .catch(async err => {
      throw new Error(
        `active cell source ${JSON.stringify(await activeSource(page))} != ${JSON.stringify(expected)}: ${err.message}`
      );
    });
}

/** Waits until the ghost text in the active cell reads exactly `expected`. */
export async function waitForGhost(page, expected, timeout = 20_000) {
  await page
    .waitForFunction(
      ([sel, want]) => {
        const el = document.querySelector(sel);
        return !!el && (want === null ? el.innerText !== '' : el.innerText === want);
      },
      [ghost, expected],
      { timeout }
    )
    .catch(async err => {
      const seen = await page.evaluate(sel => document.querySelector(sel)?.innerText ?? null, ghost);
      throw new Error(`ghost text ${JSON.stringify(seen)} != ${JSON.stringify(expected)}: ${err.message}`);
    });
}

/** Waits until no ghost text is shown anywhere. */
export async function waitForNoGhost(page, timeout = 10_000) {
  await page.waitForFunction(() => !document.querySelector('.jp-GhostText'), null, { timeout });
}
