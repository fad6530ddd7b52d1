//! What the subgraphs' migrations share: the column shapes every table uses, and creating a
//! set of tables and their indexes idempotently (a re-run of a half-done migration finishes it).

use sea_orm_migration::prelude::*;

/// A 64-bit id, not null.
pub fn id(column: impl IntoIden) -> ColumnDef {
    ColumnDef::new(column).big_integer().not_null().to_owned()
}

/// A timestamp with time zone, not null.
pub fn at(column: impl IntoIden) -> ColumnDef {
    ColumnDef::new(column)
        .timestamp_with_time_zone()
        .not_null()
        .to_owned()
}

/// Text, not null.
pub fn text(column: impl IntoIden) -> ColumnDef {
    ColumnDef::new(column).text().not_null().to_owned()
}

/// A counter starting at zero.
pub fn count(column: impl IntoIden) -> ColumnDef {
    ColumnDef::new(column)
        .big_integer()
        .not_null()
        .default(0)
        .to_owned()
}

/// Creates `tables` (each `if_not_exists`), then `indexes` (made `if_not_exists` here).
pub async fn create_all(
    manager: &SchemaManager<'_>,
    tables: impl IntoIterator<Item = TableCreateStatement>,
    indexes: impl IntoIterator<Item = IndexCreateStatement>,
) -> Result<(), DbErr> {
    for table in tables {
        manager.create_table(table).await?;
    }
    for mut index in indexes {
        manager
            .create_index(index.if_not_exists().to_owned())
            .await?;
    }
    Ok(())
}
