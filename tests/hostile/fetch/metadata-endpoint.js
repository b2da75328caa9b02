// expect: placeholder error
function render(ctx) {
  // No network from blocks: fetch is not defined.
  fetch('http://169.254.169.254/latest/meta-data/');
  return '<p>fetched</p>';
}
