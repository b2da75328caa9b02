// expect: placeholder heap-limit
// limits: {"blockCpuMs": 5000, "pageCpuMs": 10000}
function render(ctx) {
  // 2 GiB outside the V8 heap, in one backing store.
  const b = new ArrayBuffer(2 ** 31);
  return '<p>' + b.byteLength + '</p>';
}
