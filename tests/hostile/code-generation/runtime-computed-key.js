// expect: placeholder error
// The validator cannot know the key; the Function constructor it reaches refuses to compile.
function hostile(ctx) {
  const key = ['constr', 'uctor'].join('');
  const f = () => 1;
  return f[key]('return "x"')();
}
