// expect: refused no-import
function render(ctx) {
  import('data:text/javascript,export default 1');
  return '<p>imported</p>';
}
