// expect: placeholder heap-limit|timeout
function render(ctx) {
  // The same under the default limits.
  const kept = [];
  for (;;) kept.push(new Array(100000).fill(kept.length));
}
