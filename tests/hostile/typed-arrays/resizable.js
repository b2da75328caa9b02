// expect: placeholder error
// limits: {"blockCpuMs": 5000, "pageCpuMs": 10000}
function render(ctx) {
  // Resizable buffers commit memory outside the allocator: maxByteLength is ignored, resize throws.
  const b = new ArrayBuffer(8, { maxByteLength: 2 ** 32 });
  b.resize(2 ** 32);
  new Uint8Array(b).fill(1);
  return '<p>' + b.byteLength + '</p>';
}
