// Ghost-text acceptance scenario for the Notebook Predictor extension.
//
// Runs against the real kernel (target/release/notebook-predictor) with the fixture model
// (tests/fixtures); the defaults are what that model predicts, checked with jupyter_client:
//   NP_CELL1  code of cell 1 (default: import numpy as np)
//   NP_NEXT   expected ghost text (the predicted next cell) after cell 1 runs
//             (default: x = np.arange(5))
//   NP_PREFIX text typed into an empty cell (one line, typed key by key) (default: x = np.ar)
//   NP_REST   expected ghost text after NP_PREFIX (the predicted rest) (default: ange(5))
//   NP_KERNEL kernelspec name under test (default: notebook-predictor)
//   NP_OTHER_KERNEL a kernel that must never get ghost text (default: python3)
//   plus the harness variables (see README.md).
//
// Run: node --test --test-concurrency=1 ghost.test.mjs
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import path from 'node:path';
import * as h from './harness.mjs';

const want = {
  kernel: process.env.NP_KERNEL ?? 'notebook-predictor',
  otherKernel: process.env.NP_OTHER_KERNEL ?? 'python3',
  cell1: process.env.NP_CELL1 ?? 'import numpy as np',
  next: process.env.NP_NEXT ?? 'x = np.arange(5)',
  prefix: process.env.NP_PREFIX ?? 'x = np.ar',
  rest: process.env.NP_REST ?? 'ange(5)'
};

let lab;
let browser;

before(async () => {
  lab = await h.startJupyterLab();
  browser = await h.launchBrowser();
});

after(async () => {
  await browser?.close();
  await lab?.stop();
});

/** Runs one step; on failure keeps a screenshot and the logs. */
async function step(t, page, name, fn) {
  await t.test(name, async () => {
    try {
      await fn();
    } catch (err) {
      await h.saveArtifacts(page, lab, name.replace(/\W+/g, '-'));
      throw err;
    }
  });
}

/** Puts code into the active cell and focuses its editor. */
async function fillFirstCell(page, code) {
  await page.evaluate(
    src => window.jupyterapp.shell.currentWidget.content.activeCell.model.sharedModel.setSource(src),
    code
  );
  await page.click(`${h.activeCell} .cm-content`);
  await h.waitForCell(page, 0, 'edit');
}

test(`${want.kernel}: ghost text for the next cell and the rest of a cell`, async t => {
  const page = await h.openLab(browser, lab);
  await step(t, page, 'notebook starts', async () => {
    await h.newNotebook(page, want.kernel);
    await fillFirstCell(page, want.cell1);
  });

  await step(t, page, 'after Shift+Enter the new empty cell shows the predicted next cell', async () => {
    await page.keyboard.press('Shift+Enter');
    await h.waitForCell(page, 1, 'edit');
    await h.waitForGhost(page, want.next);
    await page.screenshot({ path: path.join(h.config.artifacts, 'ghost-next-cell.png') });
  });

  await step(t, page, 'Tab inserts the predicted next cell', async () => {
    await page.keyboard.press('Tab');
    await h.waitForSource(page, want.next);
    await h.waitForNoGhost(page);
  });

  await step(t, page, 'typing a prefix shows the predicted rest; Tab accepts it', async () => {
    await page.keyboard.press('Escape');
    await h.waitForCell(page, 1, 'command');
    await page.keyboard.press('b');
    await h.waitForCell(page, 2, 'command');
    await page.keyboard.press('Enter');
    await h.waitForCell(page, 2, 'edit');
    await page.keyboard.type(want.prefix);
    await h.waitForSource(page, want.prefix);
    await h.waitForGhost(page, want.rest);
    await page.screenshot({ path: path.join(h.config.artifacts, 'ghost-rest.png') });
    await page.keyboard.press('Tab');
    await h.waitForSource(page, want.prefix + want.rest);
  });

  await step(t, page, 'Escape clears the ghost; Tab with no ghost indents', async () => {
    await page.keyboard.press('Escape');
    await page.keyboard.press('b');
    await h.waitForCell(page, 3, 'command');
    await page.keyboard.press('Enter');
    await h.waitForCell(page, 3, 'edit');
    await page.keyboard.press('Alt+\\');
    await h.waitForGhost(page, null);
    // Escape dismisses the ghost and, as for any cell, leaves edit mode.
    await page.keyboard.press('Escape');
    await h.waitForNoGhost(page);
    await h.waitForCell(page, 3, 'command');
    // A reply to an earlier request may still draw a ghost when the cell is
    // re-entered; dismiss it until the cell stays without one.
    for (let attempt = 0; ; attempt++) {
      await page.keyboard.press('Enter');
      await h.waitForCell(page, 3, 'edit');
      // CodeMirror makes Tab move focus for 2 s after an Escape (its keyboard
      // escape hatch); wait until that window has closed.
      await page.waitForFunction(() => {
        const view = window.jupyterapp.shell.currentWidget.content.activeCell.editor.editor;
        const mode = view.inputState.tabFocusMode;
        return mode < 0 || (mode > 0 && Date.now() > mode);
      });
      if ((await page.locator('.jp-GhostText').count()) === 0 || attempt >= 3) {
        break;
      }
      await page.keyboard.press('Escape');
      await h.waitForNoGhost(page);
      await h.waitForCell(page, 3, 'command');
    }
    await page.keyboard.press('Tab');
    await h.waitForSource(page, '    ');
    assert.equal(await page.locator('.jp-GhostText').count(), 0);
  });
  await page.close();
});

test(`${want.otherKernel}: no ghost text ever appears`, async t => {
  const page = await h.openLab(browser, lab);
  await step(t, page, 'no ghost text and no predictor comm', async () => {
    await h.newNotebook(page, want.otherKernel);
    await page.evaluate(() => {
      window.npGhostSeen = 0;
      new MutationObserver(() => {
        window.npGhostSeen += document.querySelector('.jp-GhostText') ? 1 : 0;
      }).observe(document.body, { childList: true, subtree: true });
      const kernel = window.jupyterapp.shell.currentWidget.sessionContext.session.kernel;
      const createComm = kernel.createComm.bind(kernel);
      window.npComms = [];
      kernel.createComm = (target, id) => {
        window.npComms.push(target);
        return createComm(target, id);
      };
    });
    await fillFirstCell(page, 'x = 1');
    await page.keyboard.press('Shift+Enter');
    await h.waitForCell(page, 1, 'edit');
    await page.waitForFunction(() => {
      const panel = window.jupyterapp.shell.currentWidget;
      return panel.sessionContext.session.kernel.status === 'idle' &&
        panel.content.widgets[0].model.executionCount === 1;
    });
    await page.keyboard.press('Alt+\\');
    await page.keyboard.type('pri');
    await page.keyboard.press('Alt+\\');
    // Absence can only be observed over a window: this one spans several
    // debouncer delays (200 ms) plus a local kernel round trip.
    await page.waitForTimeout(1500);
    assert.equal(await page.evaluate(() => window.npGhostSeen), 0, 'ghost text appeared');
    assert.deepEqual(await page.evaluate(() => window.npComms), [], 'a comm was opened');
    await page.screenshot({ path: path.join(h.config.artifacts, 'other-kernel-no-ghost.png') });
  });
  await page.close();
});
