// expect: refused no-reflect
function hostile(ctx) {
  return String(Reflect.construct(Array, [1]));
}
