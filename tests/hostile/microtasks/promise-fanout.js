// expect: placeholder timeout|heap-limit
function render(ctx) {
  // Every reaction queues two more: the queue grows as fast as it runs.
  const grow = () => { Promise.resolve().then(grow); Promise.resolve().then(grow); };
  grow();
  return '<p>returned before the flood</p>';
}
