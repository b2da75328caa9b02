// expect: refused no-constructor-chain
function hostile(ctx) {
  return String((async () => {}).constructor('return 1'));
}
