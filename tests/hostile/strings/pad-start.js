// expect: placeholder heap-limit
// limits: {"blockCpuMs": 5000, "pageCpuMs": 10000}
function render(ctx) {
  const s = 'x'.padStart(2 ** 29 - 24, 'ab');
  return '<p>' + s.indexOf('y') + '</p>';
}
