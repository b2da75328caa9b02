// expect: placeholder error
function hostile(ctx) {
  Object.defineProperty(ctx, 'cart', { get() { throw new Error('trap'); } });
  return 'trapped';
}
