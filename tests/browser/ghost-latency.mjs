// Latency benchmark (not a test): time from an empty code cell becoming the
// active cell in edit mode to visible ghost text, over NP_TRIALS trials.
//
//   NP_KERNEL  kernelspec name (default: notebook-predictor)
//   NP_CELL1   code run in cell 1 first (default: import numpy as np)
//   NP_MODEL   model of the notebook-predictor kernelspec (default: the fixture model)
//   NP_TRIALS  number of trials (default: 20)
//   plus the harness variables (see README.md).
//
// Run: node ghost-latency.mjs
import * as h from './harness.mjs';

const kernel = process.env.NP_KERNEL ?? 'notebook-predictor';
const cell1 = process.env.NP_CELL1 ?? 'import numpy as np';
const trials = Number(process.env.NP_TRIALS ?? 20);

function percentile(sorted, p) {
  const i = Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1);
  return sorted[Math.max(0, i)];
}

/** In the page: run the active cell (so the kernel's state changes and nothing is served
 * from a cache), then time from the new empty cell becoming active to its ghost text. */
function trialInPage([timeoutMs, code]) {
  const app = window.jupyterapp;
  const notebook = app.shell.currentWidget.content;
  return new Promise((resolve, reject) => {
    let start = 0;
    const visible = () => {
      const el = notebook.activeCell?.node.querySelector('.jp-GhostText');
      return !!el && el.innerText !== '';
    };
    const observer = new MutationObserver(() => {
      if (start && visible()) {
        observer.disconnect();
        clearTimeout(timer);
        resolve(performance.now() - start);
      }
    });
    const timer = setTimeout(() => {
      observer.disconnect();
      reject(new Error(`no ghost text within ${timeoutMs} ms`));
    }, timeoutMs);
    observer.observe(notebook.node, { childList: true, subtree: true, characterData: true });
    notebook.activeCellChanged.connect(function started() {
      notebook.activeCellChanged.disconnect(started);
      start = performance.now();
    });
    notebook.activeCell.model.sharedModel.setSource(code);
    void app.commands.execute('notebook:run-cell-and-insert-below');
  });
}

const lab = await h.startJupyterLab();
const browser = await h.launchBrowser();
let page;
try {
  page = await h.openLab(browser, lab);
  await h.newNotebook(page, kernel);
  await page.evaluate(
    src => window.jupyterapp.shell.currentWidget.content.activeCell.model.sharedModel.setSource(src),
    cell1
  );
  await page.click(`${h.activeCell} .cm-content`);
  await page.keyboard.press('Shift+Enter');
  await h.waitForGhost(page, null, 60_000);

  const times = [];
  for (let i = 0; i < trials; i++) {
    const ms = await page.evaluate(trialInPage, [30_000, `v${i} = ${i} * 2`]);
    times.push(ms);
    console.log(`trial ${String(i + 1).padStart(2)}: ${ms.toFixed(0)} ms`);
  }
  const sorted = [...times].sort((a, b) => a - b);
  console.log(
    `ghost latency over ${trials} trials (kernel ${kernel}): ` +
      `p50 ${percentile(sorted, 50).toFixed(0)} ms, p95 ${percentile(sorted, 95).toFixed(0)} ms, ` +
      `min ${sorted[0].toFixed(0)} ms, max ${sorted[sorted.length - 1].toFixed(0)} ms`
  );
} catch (err) {
  await h.saveArtifacts(page, lab, 'ghost-latency');
  throw err;
} finally {
  await browser.close();
  await lab.stop();
}
