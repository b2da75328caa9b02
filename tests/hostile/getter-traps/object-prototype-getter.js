// expect: placeholder error
function hostile(ctx) {
  Object.defineProperty(Object.prototype, 'search', { get() { throw new Error('trap'); } });
  return 'trapped';
}
