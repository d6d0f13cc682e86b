//! SQL of the `dialog` table.
