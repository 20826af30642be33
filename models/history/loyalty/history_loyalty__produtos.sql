{{ lago_cdc.history_from_log('loyalty', 'produtos') }}
