// expect: refused no-constructor-chain
function hostile(ctx) {
  return (function () {}).constructor('return String(1)')();
}
