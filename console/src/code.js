// The code editor for custom blocks: CodeMirror 6 with JavaScript highlighting, and the
// server's validator (`blocks/validate`) as its linter, at the line and column it reports.

import { EditorView, basicSetup } from "codemirror";
import { EditorState } from "@codemirror/state";
import { javascript } from "@codemirror/lang-javascript";
import { lintGutter, setDiagnostics } from "@codemirror/lint";

const nonce = document.body.dataset.styleNonce;

/** Offset in `doc` of a 1-based line and column, clamped to the document. */
function offset(doc, line, column) {
  const l = doc.line(Math.min(Math.max(1, line || 1), doc.lines));
  return Math.min(l.from + Math.max(0, (column || 1) - 1), l.to);
}

/** `readOnly`: the code can be read, selected and copied, never typed in (a viewer's). */
export function codeEditor(parent, text, onChange, { readOnly = false } = {}) {
  const view = new EditorView({
    doc: text,
    parent,
    extensions: [
      basicSetup,
      javascript(),
      lintGutter(),
      EditorState.readOnly.of(readOnly),
      EditorView.editable.of(!readOnly),
      EditorView.cspNonce.of(nonce || ""),
      EditorView.updateListener.of((u) => {
        if (u.docChanged) onChange(u.state.doc.toString());
      }),
    ],
  });
  return {
    view,
    text: () => view.state.doc.toString(),
    /** Shows the validator's errors and warnings inline. */
    show(errors, warnings) {
      const doc = view.state.doc;
      const diag = (d, severity) => {
        const from = offset(doc, d.line, d.column);
        return { from, to: Math.min(from + 1, doc.length), severity, message: `${d.message} (${d.rule})`, source: "validator" };
      };
      view.dispatch(setDiagnostics(view.state, [...errors.map((d) => diag(d, "error")), ...warnings.map((d) => diag(d, "warning"))]));
    },
    destroy: () => view.destroy(),
  };
}
