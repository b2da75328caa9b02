// expect: refused no-this
function render(ctx) {
  // The global object reached without naming it (a sloppy function's `this`) is refused at
  // publish; tests/primordials.rs runs the same probe with the validator off.
  const g = (function () { return this; })();
  const allowed = new Set(['Object', 'Function', 'Array', 'Number', 'parseFloat', 'parseInt', 'Infinity', 'NaN',
    'undefined', 'Boolean', 'String', 'Symbol', 'Date', 'Promise', 'RegExp', 'Error', 'AggregateError', 'EvalError',
    'RangeError', 'ReferenceError', 'SyntaxError', 'TypeError', 'URIError', 'globalThis', 'JSON', 'Math', 'Intl',
    'ArrayBuffer', 'Atomics', 'Uint8Array', 'Int8Array', 'Uint16Array', 'Int16Array', 'Uint32Array', 'Int32Array',
    'Float16Array', 'Float32Array', 'Float64Array', 'Uint8ClampedArray', 'BigUint64Array', 'BigInt64Array', 'DataView',
    'Map', 'BigInt', 'Set', 'WeakMap', 'WeakSet', 'Proxy', 'Reflect', 'FinalizationRegistry', 'WeakRef', 'decodeURI',
    'decodeURIComponent', 'encodeURI', 'encodeURIComponent', 'escape', 'unescape', 'eval', 'isFinite', 'isNaN',
    'console', 'Iterator', 'SuppressedError', 'DisposableStack', 'AsyncDisposableStack', 'SharedArrayBuffer', 'WebAssembly', 'Temporal']);
  if (!g) throw new Error('no global object reachable');
  const extra = Object.getOwnPropertyNames(g).filter((n) => !allowed.has(n));
  if (extra.length) return '<p>extra globals: ' + extra.join(', ') + '</p>';
  throw new Error('only ECMAScript globals');
}
