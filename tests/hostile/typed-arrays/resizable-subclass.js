// expect: placeholder error
// limits: {"blockCpuMs": 5000, "pageCpuMs": 10000}
function render(ctx) {
  // The same through a subclass and through the constructor a buffer names.
  class Big extends ArrayBuffer {}
  const viaClass = new Big(8, { maxByteLength: 2 ** 32 });
  const Native = new ArrayBuffer(1).constructor;
  const viaConstructor = new Native(8, { maxByteLength: 2 ** 32 });
  if (viaClass.resizable || viaConstructor.resizable) return '<p>resizable</p>';
  viaConstructor.resize(2 ** 32);
  return '<p>resized</p>';
}
