// expect: placeholder error
function hostile(ctx) {
  Object.defineProperty(Array.prototype, '0', { set() { throw new Error('trap'); } });
  return 'trapped';
}
