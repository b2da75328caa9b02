// expect: placeholder error
// limits: {"blockCpuMs": 5000, "pageCpuMs": 10000}
function render(ctx) {
  // The same through a subclass and through the global constructor (reading a buffer's
  // `.constructor` is refused at publish: no-constructor-chain; globals are read-only).
  class Big extends ArrayBuffer {}
  const viaClass = new Big(8, { maxByteLength: 2 ** 32 });
  const Native = ArrayBuffer;
  const viaConstructor = new Native(8, { maxByteLength: 2 ** 32 });
  if (viaClass.resizable || viaConstructor.resizable) return '<p>resizable</p>';
  viaConstructor.resize(2 ** 32);
  return '<p>resized</p>';
}
