// expect: placeholder error
function render(ctx) {
  new WebSocket('ws://127.0.0.1:9/');
  return '<p>connected</p>';
}
