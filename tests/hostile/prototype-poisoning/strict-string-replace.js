// expect: placeholder error
// Under 'use strict' assigning to a frozen built-in throws; tests/primordials.rs checks that
// the next render's escaping holds when the assignment is attempted in sloppy code.
function hostile(ctx) {
  'use strict';
  String.prototype.replace = () => '<script>alert(1)</script>';
  return 'poisoned';
}
