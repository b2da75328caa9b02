// expect: placeholder error
function render(ctx) {
  setInterval(function () { for (;;) {} }, 1);
  return '<p>interval scheduled</p>';
}
