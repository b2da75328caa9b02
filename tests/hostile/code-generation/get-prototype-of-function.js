// expect: refused no-proto
function hostile(ctx) {
  const proto = Object.getPrototypeOf(async () => {});
  return String(proto);
}
