// expect: placeholder error
function hostile(ctx) {
  const key = ['constr', 'uctor'].join('');
  const f = async () => 1;
  return String(f[key]('return 1'));
}
