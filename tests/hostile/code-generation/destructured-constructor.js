// expect: refused no-constructor-chain
function hostile(ctx) {
  const { constructor: make } = () => 1;
  return make('return "x"')();
}
