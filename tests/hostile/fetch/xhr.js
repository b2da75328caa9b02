// expect: placeholder error
function render(ctx) {
  const x = new XMLHttpRequest();
  x.open('GET', 'http://127.0.0.1:22/');
  return '<p>sent</p>';
}
