// expect: placeholder error
function render(ctx) {
  setImmediate(function () { for (;;) {} });
  return '<p>immediate scheduled</p>';
}
