// expect: refused no-constructor-chain
function hostile(ctx) {
  return String((function* () {}).constructor('yield 1')().next().value);
}
