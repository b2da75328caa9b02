// expect: placeholder timeout
function render(ctx) {
  (async () => { for (;;) await null; })();
  return '<p>returned before the flood</p>';
}
