// expect: placeholder heap-limit|timeout
function render(ctx) {
  // The same maximal string under the default limits (50 ms per block).
  const s = 'x'.repeat(2 ** 29 - 24);
  return '<p>' + s.indexOf('y') + '</p>';
}
