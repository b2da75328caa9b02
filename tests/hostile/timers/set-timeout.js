// expect: placeholder error
function render(ctx) {
  // No timers in blocks: setTimeout is not defined (ReferenceError), so nothing runs later.
  setTimeout(function () { for (;;) {} }, 0);
  return '<p>timer scheduled</p>';
}
