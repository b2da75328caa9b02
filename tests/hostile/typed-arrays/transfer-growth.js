// expect: placeholder heap-limit
// limits: {"blockCpuMs": 5000, "pageCpuMs": 10000}
function render(ctx) {
  let b = new ArrayBuffer(1 << 20);
  for (;;) b = b.transfer(b.byteLength * 2);
}
