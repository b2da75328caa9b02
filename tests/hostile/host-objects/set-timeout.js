// expect: refused no-host-objects
function hostile(ctx) {
  setTimeout(() => {}, 0);
  return '';
}
