// expect: refused no-host-objects
function hostile(ctx) {
  fetch('http://169.254.169.254/latest/meta-data/');
  return '';
}
