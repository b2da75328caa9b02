// expect: placeholder error|output-too-large
// limits: {"blockCpuMs": 5000, "pageCpuMs": 10000}
function render(ctx) {
  // A structure nested a million deep: the serializer either overflows or makes 9 MB of JSON.
  let deep = {};
  for (let i = 0; i < 1000000; i++) deep = { next: deep };
  return JSON.stringify(deep);
}
