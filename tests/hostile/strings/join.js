// expect: placeholder heap-limit
// limits: {"blockCpuMs": 5000, "pageCpuMs": 10000}
function render(ctx) {
  return '<p>' + new Array(2 ** 24).fill('abcdefgh').join('').length + '</p>';
}
