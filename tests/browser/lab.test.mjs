// The JupyterLab scenario against the real kernel and the fixture model: launcher card with
// the kernel's logo, a notebook, predicted outputs, the Tab completer, interrupting a long
// generation, restarting, and the saved .ipynb. Every step asserts what the page shows.
//
//   plus the harness variables (see README.md); NP_MODEL replaces the fixture model, but the
//   expected values below are the fixture model's.
//
// Run: node --test --test-concurrency=1 lab.test.mjs
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, test } from 'node:test';
import * as h from './harness.mjs';

const KERNEL = 'notebook-predictor';
const DISPLAY = 'Notebook Predictor';
// A kernelspec whose model cannot end an output and whose output limit is 100000 tokens: the
// fixture model itself ends every output within milliseconds (see tests/fixtures/make_babbler_model.py).
const LONG_KERNEL = 'notebook-predictor-long';
const LONG_DISPLAY = 'Notebook Predictor (long outputs)';
const SAVED_NAME = 'predicted.ipynb';
const LONG_CELL = 'for i in range(40):\n    print(i * i)';

// What the fixture model predicts (checked with jupyter_client against the kernel).
const want = {
  hello: { code: 'print("hello, world")', stdout: 'hello, world\n' },
  complete: { prefix: 'gree', match: 'greet("Ada")' },
  answer: { code: '6*7', result: '42' }
};

let lab;
let browser;
let page;
const timings = {};

before(async () => {
  lab = await h.startJupyterLab({
    extraSpecs: tmp => {
      const babbler = path.join(tmp, 'babbler-model');
      execFileSync(path.join(h.config.venv, 'bin/python'), [
        path.join(h.repoRoot, 'tests/fixtures/make_babbler_model.py'),
        h.config.model || h.fixtureModel(),
        babbler
      ]);
      return [
        {
          name: LONG_KERNEL,
          model: babbler,
          args: ['--max-output-tokens', '100000'],
          displayName: LONG_DISPLAY
        }
      ];
    }
  });
  browser = await h.launchBrowser();
  page = await h.openLab(browser, lab);
});

after(async () => {
  await browser?.close();
  await lab?.stop();
  console.log(`lab.test timings: ${JSON.stringify(timings)}`);
  console.log(`artifacts: ${h.config.artifacts}`);
});

let failed = false;

/** One step of the scenario (in order); on failure keeps a screenshot and the logs. */
function step(name, fn) {
  test(name, async t => {
    if (failed) {
      t.skip('an earlier step failed');
      return;
    }
    try {
      await fn();
    } catch (err) {
      failed = true;
      await h.saveArtifacts(page, lab, `lab-${name.replace(/\W+/g, '-').slice(0, 60)}`);
      throw err;
    }
  });
}

async function screenshot(name) {
  fs.mkdirSync(h.config.artifacts, { recursive: true });
  await page.screenshot({ path: path.join(h.config.artifacts, name) });
}

const panelSel = '.jp-NotebookPanel:not(.lm-mod-hidden)';

/** Waits until the current notebook runs kernel `name`, idle, and the page says so. */
async function waitForIdleKernel(name, display, timeout = 60_000) {
  await page.waitForFunction(
    ([kernelName, sel]) => {
      const panel = window.jupyterapp.shell.currentWidget;
      const kernel = panel?.sessionContext?.session?.kernel;
      const indicator = document.querySelector(`${sel} .jp-Notebook-ExecutionIndicator`);
      return (
        kernel?.name === kernelName &&
        kernel.status === 'idle' &&
        !!panel.content.activeCell &&
        (!indicator || indicator.getAttribute('data-status') === 'idle')
      );
    },
    [name, panelSel],
    { timeout }
  );
  const shown = await page.locator(`${panelSel} .jp-KernelName`).innerText();
  assert.equal(shown.trim(), display, 'kernel name in the notebook toolbar');
}

/** Cell `i` of the current notebook: prompt text and output text as rendered. */
function cellView(i) {
  return page.evaluate(index => {
    const cell = window.jupyterapp.shell.currentWidget.content.widgets[index];
    return {
      prompt: cell.node.querySelector('.jp-InputPrompt')?.innerText.trim() ?? null,
      output: cell.node.querySelector('.jp-OutputArea')?.innerText ?? ''
    };
  }, i);
}

async function waitForCellView(i, predicate, what, timeout = 20_000) {
  const deadline = Date.now() + timeout;
  for (;;) {
    const view = await cellView(i);
    if (predicate(view)) {
      return view;
    }
    if (Date.now() > deadline) {
      throw new Error(`cell ${i}: ${what}; page shows ${JSON.stringify(view)}`);
    }
    // Polls the page; each round is one evaluate round trip.
    await page.waitForFunction(() => true, null, { polling: 'raf' });
  }
}

/** Waits out CodeMirror's Tab-moves-focus window (2 s after an Escape). */
async function waitForTabToEdit() {
  await page.waitForFunction(() => {
    const view = window.jupyterapp.shell.currentWidget.content.activeCell.editor.editor;
    const mode = view.inputState.tabFocusMode;
    return mode < 0 || (mode > 0 && Date.now() > mode);
  });
}

step('1 launcher shows a Notebook Predictor card with the kernel logo', async () => {
  const card = page.locator(`.jp-LauncherCard[title="${DISPLAY}"]`).first();
  await card.waitFor({ state: 'visible', timeout: 30_000 });
  assert.equal((await card.locator('.jp-LauncherCard-label').innerText()).trim(), DISPLAY);
  assert.equal(await card.locator('.jp-LauncherCard-noKernelIcon').count(), 0, 'default letter icon');
  const img = card.locator('.jp-LauncherCard-icon img');
  await page.waitForFunction(
    sel => {
      const el = document.querySelector(sel);
      return !!el && el.complete && el.naturalWidth > 0;
    },
    `.jp-LauncherCard[title="${DISPLAY}"] .jp-LauncherCard-icon img`,
    { timeout: 10_000 }
  );
  const src = await img.evaluate(el => el.src);
  assert.match(src, new RegExp(`/kernelspecs/${KERNEL}/logo-`), `logo src ${src}`);
  // The image served is the kernelspec's own logo file.
  const served = await page.evaluate(async url => {
    const res = await fetch(url);
    return { status: res.status, type: res.headers.get('content-type'), bytes: (await res.arrayBuffer()).byteLength };
  }, src);
  const file = path.join(lab.dirs.data, 'kernels', KERNEL, decodeURIComponent(new URL(src).pathname.split('/').pop()));
  assert.equal(served.status, 200);
  assert.match(served.type ?? '', /^image\//);
  assert.equal(served.bytes, fs.statSync(file).size, `served logo = ${file}`);
  await screenshot('01-launcher.png');
});

step('2 a notebook created from the card reaches idle', async () => {
  await page.locator(`.jp-LauncherCard[title="${DISPLAY}"]`).first().click();
  await waitForIdleKernel(KERNEL, DISPLAY);
  await page.locator(`${panelSel} .jp-Cell.jp-mod-active .cm-content`).click();
  await h.waitForCell(page, 0, 'edit');
});

step('3 print("hello, world") shows its predicted output and prompt [1]', async () => {
  await page.keyboard.type(want.hello.code);
  await h.waitForSource(page, want.hello.code);
  await page.keyboard.press('Shift+Enter');
  const view = await waitForCellView(0, v => v.prompt === '[1]:' && v.output !== '', 'prompt [1] with output');
  assert.equal(view.output.trim(), want.hello.stdout.trim());
  await h.waitForCell(page, 1, 'edit');
  await screenshot('03-hello-output.png');
});

step('4 Tab opens the completer with the predicted continuation; accepting inserts it', async () => {
  await page.keyboard.type(want.complete.prefix);
  await h.waitForSource(page, want.complete.prefix);
  // Typing shows an inline ghost too, and Tab would accept that instead: let the ghost
  // settle, dismiss it (Escape also leaves edit mode) and come back to the editor.
  await h.waitForGhost(page, null).catch(() => undefined);
  await page.keyboard.press('Escape');
  await h.waitForNoGhost(page);
  await h.waitForCell(page, 1, 'command');
  await page.keyboard.press('Enter');
  await h.waitForCell(page, 1, 'edit');
  await waitForTabToEdit();
  await page.evaluate(() => {
    const editor = window.jupyterapp.shell.currentWidget.content.activeCell.editor;
    editor.setCursorPosition(editor.getPositionAt(editor.model.sharedModel.getSource().length));
  });
  await page.keyboard.press('Tab');
  // The kernel's complete_reply has one match; JupyterLab's completer inserts a sole match at
  // once instead of listing it. With several matches it shows the list: check and accept it.
  const completer = page.locator('.jp-Completer:not(.lm-mod-hidden)');
  const shown = await Promise.race([
    completer.waitFor({ state: 'visible', timeout: 15_000 }).then(() => 'list'),
    h.waitForSource(page, want.complete.match, 15_000).then(() => 'inserted')
  ]);
  if (shown === 'list') {
    const items = await completer.locator('.jp-Completer-item').evaluateAll(els =>
      els.map(el => el.querySelector('.jp-Completer-match')?.innerText ?? el.innerText)
    );
    assert.ok(items.includes(want.complete.match), `completer lists ${JSON.stringify(items)}`);
    await screenshot('04-completer.png');
    await page.keyboard.press('Enter');
    await completer.waitFor({ state: 'hidden', timeout: 5_000 });
  } else {
    await screenshot('04-completer.png');
  }
  timings.completer = shown;
  console.log(`Tab completer: ${shown === 'list' ? 'listed the match' : 'inserted the sole match directly'}`);
  await h.waitForSource(page, want.complete.match);
  assert.equal(await page.locator('.jp-Completer:not(.lm-mod-hidden)').count(), 0);
});

step('5 interrupting a long generation returns the kernel to idle within 1 s', async () => {
  await page.evaluate(
    name => window.jupyterapp.commands.execute('notebook:create-new', { kernelName: name }),
    LONG_KERNEL
  );
  await waitForIdleKernel(LONG_KERNEL, LONG_DISPLAY);
  await page.evaluate(
    src => window.jupyterapp.shell.currentWidget.content.activeCell.model.sharedModel.setSource(src),
    LONG_CELL
  );
  await page.locator(`${panelSel} .jp-Cell.jp-mod-active .cm-content`).click();
  await page.keyboard.press('Shift+Enter');
  // Streaming: the output grows while the kernel is busy.
  await waitForCellView(0, v => v.prompt === '[*]:' && v.output.length > 200, 'streamed output while busy');
  const first = (await cellView(0)).output.length;
  await waitForCellView(0, v => v.output.length > first, 'output still growing');
  await page.evaluate(() => {
    const kernel = window.jupyterapp.shell.currentWidget.sessionContext.session.kernel;
    window.npInterrupt = { clicked: 0, idle: 0 };
    kernel.statusChanged.connect((_, status) => {
      if (status === 'idle' && window.npInterrupt.clicked && !window.npInterrupt.idle) {
        window.npInterrupt.idle = performance.now();
      }
    });
    document.addEventListener(
      'mousedown',
      e => {
        if (e.target.closest('[data-command="notebook:interrupt-kernel"]')) {
          window.npInterrupt.clicked = performance.now();
        }
      },
      true
    );
  });
  await page.locator(`${panelSel} .jp-Toolbar [data-command="notebook:interrupt-kernel"]`).click();
  await page.waitForFunction(() => window.npInterrupt.idle > 0, null, { timeout: 10_000 });
  const ms = await page.evaluate(() => window.npInterrupt.idle - window.npInterrupt.clicked);
  timings.interruptToIdleMs = Math.round(ms);
  console.log(`interrupt button -> kernel idle: ${ms.toFixed(0)} ms`);
  assert.ok(ms < 1000, `kernel idle ${ms.toFixed(0)} ms after the interrupt click`);
  const view = await waitForCellView(0, v => v.prompt === '[1]:', 'prompt [1] after the interrupt');
  assert.match(view.output, /KeyboardInterrupt/);
  await waitForIdleKernel(LONG_KERNEL, LONG_DISPLAY, 5_000);
});

step('6 restart from the Kernel menu; the next run is [1]', async () => {
  // Back to the first notebook.
  await page.locator('.lm-DockPanel-tabBar .lm-TabBar-tab', { hasText: 'Untitled.ipynb' }).click();
  await waitForIdleKernel(KERNEL, DISPLAY);
  await page.locator('.lm-MenuBar-item', { hasText: 'Kernel' }).click();
  await page.locator('.lm-Menu-item[data-command="kernelmenu:restart"]').click();
  const dialog = page.locator('.jp-Dialog');
  await dialog.waitFor({ state: 'visible' });
  assert.match(await dialog.locator('.jp-Dialog-header').innerText(), /Restart Kernel/);
  const restartStart = Date.now();
  await dialog.locator('button.jp-mod-accept').click();
  await dialog.waitFor({ state: 'detached' });
  await page.waitForFunction(
    () => window.jupyterapp.shell.currentWidget.sessionContext.session.kernel.status !== 'idle',
    null,
    { timeout: 10_000 }
  ).catch(() => undefined); // the restart may already be over
  await waitForIdleKernel(KERNEL, DISPLAY);
  timings.restartMs = Date.now() - restartStart;
  // A new cell at the end with 6*7.
  await page.evaluate(async src => {
    const app = window.jupyterapp;
    const nb = app.shell.currentWidget.content;
    nb.activeCellIndex = nb.widgets.length - 1;
    await app.commands.execute('notebook:insert-cell-below');
    nb.activeCell.model.sharedModel.setSource(src);
  }, want.answer.code);
  const index = await page.evaluate(() => window.jupyterapp.shell.currentWidget.content.activeCellIndex);
  await page.locator(`${panelSel} .jp-Cell.jp-mod-active .cm-content`).click();
  await page.keyboard.press('Shift+Enter');
  const view = await waitForCellView(index, v => v.prompt === '[1]:' && v.output !== '', 'prompt [1] after restart');
  assert.match(view.output, new RegExp(want.answer.result));
  // The cells run before the restart keep their prompts.
  assert.equal((await cellView(0)).prompt, '[1]:');
});

step('7 Ctrl+S saves the predicted outputs with their metadata', async () => {
  await page.keyboard.press('Escape');
  await page.keyboard.press('Control+s');
  // The first save of an Untitled notebook asks for a name.
  const dialog = page.locator('.jp-Dialog');
  await dialog.waitFor({ state: 'visible' });
  assert.match(await dialog.locator('.jp-Dialog-header').innerText(), /Rename file/);
  await dialog.locator('input.jp-mod-styled, input[type="text"]').first().fill(SAVED_NAME);
  await dialog.locator('button.jp-mod-accept').click();
  await dialog.waitFor({ state: 'detached' });
  await page.waitForFunction(
    name => {
      const panel = window.jupyterapp.shell.currentWidget;
      return !panel.model.dirty && panel.context.path === name;
    },
    SAVED_NAME,
    { timeout: 15_000 }
  );
  const file = path.join(lab.dirs.root, SAVED_NAME);
  const nb = JSON.parse(fs.readFileSync(file, 'utf8'));
  assert.equal(nb.metadata.kernelspec.name, KERNEL);
  const code = nb.cells.filter(c => c.cell_type === 'code');
  const src = c => (Array.isArray(c.source) ? c.source.join('') : c.source);
  const hello = code.find(c => src(c) === want.hello.code);
  assert.ok(hello, 'hello cell saved');
  assert.equal(hello.execution_count, 1);
  const stream = hello.outputs.find(o => o.output_type === 'stream');
  assert.ok(stream, `stream output saved: ${JSON.stringify(hello.outputs)}`);
  const text = Array.isArray(stream.text) ? stream.text.join('') : stream.text;
  assert.equal(text, want.hello.stdout);
  // nbformat's stream outputs have only output_type, name and text: no metadata.
  console.log(`saved stream output: ${JSON.stringify(stream)}`);
  const answer = code.find(c => src(c) === want.answer.code);
  assert.ok(answer, 'answer cell saved');
  const rich = answer.outputs.filter(o => ['execute_result', 'display_data'].includes(o.output_type));
  assert.ok(rich.length > 0, `execute_result saved: ${JSON.stringify(answer.outputs)}`);
  for (const out of rich) {
    assert.equal(out.metadata?.notebook_predictor?.predicted, true, JSON.stringify(out));
  }
  const plain = rich[0].data['text/plain'];
  assert.equal(Array.isArray(plain) ? plain.join('') : plain, want.answer.result);
  console.log(`saved execute_result: ${JSON.stringify(rich[0])}`);
});
