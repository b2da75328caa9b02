// expect: placeholder timeout
function render(ctx) {
  // Each reaction queues the next: the microtask queue never drains.
  const loop = () => Promise.resolve().then(loop);
  loop();
  return '<p>returned before the flood</p>';
}
