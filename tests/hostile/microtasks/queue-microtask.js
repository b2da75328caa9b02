// expect: placeholder timeout|error
function render(ctx) {
  // queueMicrotask is a host API (absent: ReferenceError); if present, flood it.
  const loop = () => queueMicrotask(loop);
  loop();
  return '<p>returned before the flood</p>';
}
