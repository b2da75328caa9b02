// expect: placeholder timeout
function render(ctx) {
  // Catches the stack overflow and recurses again, forever: only the CPU limit ends it.
  function down(n) { try { return down(n + 1); } catch (e) { return down(0); } }
  return String(down(0));
}
