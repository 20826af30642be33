{{ lago_cdc.history_from_log('loyalty', 'transacao_produto') }}
