// expect: placeholder output-too-large
function render(ctx) {
  // A rope of maximal length costs nothing until it is flattened; returned, it is too large.
  return 'x'.repeat(2 ** 29 - 24);
}
