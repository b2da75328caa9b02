// expect: placeholder heap-limit
// limits: {"blockCpuMs": 5000, "pageCpuMs": 10000}
function render(ctx) {
  // A two-byte string of maximal length: 1 GiB in one object, the largest V8 allocates.
  const s = '\u1234'.repeat(2 ** 29 - 24);
  return '<p>' + s.indexOf('y') + '</p>';
}
