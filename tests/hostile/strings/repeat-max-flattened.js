// expect: placeholder heap-limit
// limits: {"blockCpuMs": 5000, "pageCpuMs": 10000}
function render(ctx) {
  // A one-byte string of V8's maximal length (512 MiB), flattened by indexOf.
  const s = 'x'.repeat(2 ** 29 - 24);
  return '<p>' + s.indexOf('y') + '</p>';
}
