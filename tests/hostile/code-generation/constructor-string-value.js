// expect: refused no-constructor-chain
function hostile(ctx) {
  const name = 'constructor';
  return ctx.block[name][name]('return "x"')();
}
