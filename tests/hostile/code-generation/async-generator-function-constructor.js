// expect: refused no-constructor-chain
function hostile(ctx) {
  return String((async function* () {}).constructor('yield 1'));
}
