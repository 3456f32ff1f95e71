/**
 * Notebook Predictor for JupyterLab: shows the kernel's predicted rest of a
 * cell, or the predicted whole next cell, as inline ghost text (Tab accepts).
 */
import {
  JupyterFrontEnd,
  JupyterFrontEndPlugin
} from '@jupyterlab/application';
import {
  CompletionHandler,
  ICompletionProviderManager,
  IInlineCompletionContext,
  IInlineCompletionList,
  IInlineCompletionProvider
} from '@jupyterlab/completer';
import {
  INotebookTracker,
  NotebookActions,
  NotebookPanel
} from '@jupyterlab/notebook';
import { Kernel, KernelMessage } from '@jupyterlab/services';

const KERNEL_NAME = 'notebook-predictor';
const COMM_TARGET = 'notebook_predictor';
const INVOKE_COMMAND = 'inline-completer:invoke';
/** The editor of a newly active cell is swapped in asynchronously. */
const EDITOR_SWAP_DELAY_MS = 100;
const DEFAULT_TIMEOUT_MS = 15000;

/** The kernel's answer to one prediction request. */
interface IPrediction {
  request_id: string;
  text: string;
  confidence: number;
  kind: 'next_cell' | 'rest';
}

/** Kernels known (from kernel_info) to be Notebook Predictor. */
const predictorImplementations = new WeakMap<Kernel.IKernelConnection, boolean>();

/** Whether a kernel is Notebook Predictor, judged without sending it anything. */
function isPredictor(kernel: Kernel.IKernelConnection | null | undefined): boolean {
  if (!kernel) {
    return false;
  }
  if (kernel.name === KERNEL_NAME) {
    return true;
  }
  if (!predictorImplementations.has(kernel)) {
    predictorImplementations.set(kernel, false);
    void kernel.info.then(
      info => predictorImplementations.set(kernel, info.implementation === KERNEL_NAME),
      () => undefined
    );
  }
  return predictorImplementations.get(kernel) === true;
}

/** One `notebook_predictor` comm per kernel connection, reused across requests. */
class PredictorChannel {
  constructor(private readonly _kernel: Kernel.IKernelConnection) {}

  /** Sends a request and resolves with the matching reply. */
  request(code: string, cursor: number, timeoutMs: number): Promise<IPrediction> {
    const comm = this._ensureComm();
    const requestId = `${Date.now().toString(36)}-${(this._counter++).toString(36)}`;
    return new Promise<IPrediction>((resolve, reject) => {
      const timer = window.setTimeout(() => {
        this._pending.delete(requestId);
        reject(new Error(`Prediction ${requestId} timed out`));
      }, timeoutMs);
      this._pending.set(requestId, reply => {
        window.clearTimeout(timer);
        resolve(reply);
      });
      comm.send({ request_id: requestId, code, cursor });
    });
  }

  /** Opens a comm unless a live one exists (kernel restarts dispose comms). */
  private _ensureComm(): Kernel.IComm {
    if (this._comm && !this._comm.isDisposed) {
      return this._comm;
    }
    const comm = this._kernel.createComm(COMM_TARGET);
    comm.onMsg = (msg: KernelMessage.ICommMsgMsg) => {
      const reply = msg.content.data as unknown as IPrediction;
      if (typeof reply?.request_id !== 'string') {
        return;
      }
      const settle = this._pending.get(reply.request_id);
      this._pending.delete(reply.request_id);
      settle?.(reply);
    };
    comm.onClose = () => {
      if (this._comm === comm) {
        this._comm = null;
      }
    };
    comm.open({});
    this._comm = comm;
    return comm;
  }

  private _comm: Kernel.IComm | null = null;
  private _counter = 0;
  private readonly _pending = new Map<string, (reply: IPrediction) => void>();
}

/** Inline completion provider backed by the Notebook Predictor kernel. */
class PredictorProvider implements IInlineCompletionProvider {
  readonly identifier = KERNEL_NAME;
  readonly name = 'Notebook Predictor';
  readonly schema = {
    default: { timeout: DEFAULT_TIMEOUT_MS, debouncerDelay: 200, enabled: true }
  };

  configure(settings: { [property: string]: unknown }): void {
    if (typeof settings.timeout === 'number') {
      this._timeoutMs = settings.timeout;
    }
  }

  async fetch(
    request: CompletionHandler.IRequest,
    context: IInlineCompletionContext
  ): Promise<IInlineCompletionList> {
    const kernel = context.session?.kernel;
    if (!kernel || !isPredictor(kernel)) {
      return { items: [] };
    }
    let channel = this._channels.get(kernel);
    if (!channel) {
      channel = new PredictorChannel(kernel);
      this._channels.set(kernel, channel);
    }
    // JupyterLab already converts the editor's UTF-16 offset into Unicode
    // code points (Text.jsIndexToCharIndex), which is what the kernel counts.
    const reply = await channel.request(request.text, request.offset, this._timeoutMs);
    const { widget } = context;
    if (widget instanceof NotebookPanel && widget.content.mode !== 'edit') {
      // The user left the editor (e.g. Escape) while the kernel was predicting.
      return { items: [] };
    }
    const text = typeof reply.text === 'string' ? reply.text : '';
    return { items: text ? [{ insertText: text }] : [] };
  }

  private _timeoutMs = DEFAULT_TIMEOUT_MS;
  private readonly _channels = new WeakMap<Kernel.IKernelConnection, PredictorChannel>();
}

/**
 * Inline completions never fire automatically in an empty cell, so invoke
 * the completer explicitly when an empty code cell of a predictor notebook
 * becomes active, and again when the kernel goes idle after an execution.
 */
function autoInvoke(app: JupyterFrontEnd, tracker: INotebookTracker): void {
  const maybeInvoke = async (panel: NotebookPanel | null): Promise<void> => {
    const cell = panel?.content.activeCell;
    if (
      !panel ||
      !cell ||
      cell.model.type !== 'code' ||
      cell.model.sharedModel.getSource().trim() !== '' ||
      !isPredictor(panel.sessionContext.session?.kernel)
    ) {
      return;
    }
    await cell.ready;
    await new Promise(resolve => window.setTimeout(resolve, EDITOR_SWAP_DELAY_MS));
    const stillWanted =
      tracker.currentWidget === panel &&
      panel.content.activeCell === cell &&
      panel.content.mode === 'edit' &&
      cell.model.sharedModel.getSource().trim() === '';
    if (stillWanted && app.commands.hasCommand(INVOKE_COMMAND)) {
      await app.commands.execute(INVOKE_COMMAND);
    }
  };

  tracker.activeCellChanged.connect(() => void maybeInvoke(tracker.currentWidget));

  NotebookActions.executed.connect((_, { notebook }) => {
    const panel = tracker.find(p => p.content === notebook);
    const session = panel?.sessionContext;
    if (!panel || !session) {
      return;
    }
    if (session.session?.kernel?.status === 'idle') {
      void maybeInvoke(panel);
      return;
    }
    const onStatus = (_: unknown, status: Kernel.Status): void => {
      if (status === 'idle' || status === 'dead' || status === 'restarting') {
        session.statusChanged.disconnect(onStatus);
        if (status === 'idle') {
          void maybeInvoke(panel);
        }
      }
    };
    session.statusChanged.connect(onStatus);
  });
}

const plugin: JupyterFrontEndPlugin<void> = {
  id: 'notebook-predictor:plugin',
  description: 'Ghost-text predictions from the Notebook Predictor kernel.',
  autoStart: true,
  requires: [ICompletionProviderManager, INotebookTracker],
  activate: (
    app: JupyterFrontEnd,
    manager: ICompletionProviderManager,
    tracker: INotebookTracker
  ) => {
    if (typeof manager.registerInlineProvider !== 'function') {
      console.warn('Notebook Predictor: this JupyterLab has no inline completer');
      return;
    }
    manager.registerInlineProvider(new PredictorProvider());
    autoInvoke(app, tracker);
  }
};

export default plugin;
