/* missing_import.c — imports a function no host module provides: instantiation must fail
 * with a message naming it. */
__attribute__((import_module("shoal"), import_name("no_such_op"))) int no_such_op(int);
int main(void) { return no_such_op(1); }
