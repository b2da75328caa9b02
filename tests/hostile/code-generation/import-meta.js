// expect: refused no-import
function hostile(ctx) {
  return String(import.meta);
}
