// expect: refused no-constructor-chain
function hostile(ctx, helpers) {
  return helpers.escapeHtml['constr' + 'uctor']('return "x"')();
}
