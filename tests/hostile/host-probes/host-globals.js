// expect: placeholder error
function render(ctx) {
  // Renders (and so fails this case) if any host object is reachable; throws when none is.
  // (WebAssembly, SharedArrayBuffer and Atomics are refused at publish: tests/hostile/wasm, atomics.)
  const found = [];
  if (typeof Deno !== 'undefined') found.push('Deno');
  if (typeof process !== 'undefined') found.push('process');
  if (typeof module !== 'undefined') found.push('module');
  if (typeof Bun !== 'undefined') found.push('Bun');
  if (typeof global !== 'undefined') found.push('global');
  if (typeof window !== 'undefined') found.push('window');
  if (typeof self !== 'undefined') found.push('self');
  if (typeof fetch !== 'undefined') found.push('fetch');
  if (typeof XMLHttpRequest !== 'undefined') found.push('XMLHttpRequest');
  if (typeof WebSocket !== 'undefined') found.push('WebSocket');
  if (typeof setTimeout !== 'undefined') found.push('setTimeout');
  if (typeof setInterval !== 'undefined') found.push('setInterval');
  if (typeof queueMicrotask !== 'undefined') found.push('queueMicrotask');
  if (typeof __vitrina !== 'undefined') found.push('__vitrina');
  if (typeof importScripts !== 'undefined') found.push('importScripts');
  if (typeof postMessage !== 'undefined') found.push('postMessage');
  if (typeof Worker !== 'undefined') found.push('Worker');
  if (found.length) return '<p>host objects: ' + found.join(', ') + '</p>';
  throw new Error('no host objects');
}
