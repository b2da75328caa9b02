// expect: refused no-host-objects
function hostile(ctx) {
  return String(process.env);
}
